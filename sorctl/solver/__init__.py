"""SOR solvers for symmetric positive definite systems: kernels, files, local and distributed
drivers.

No Docker, typer or rich imports here: node images and notebooks import this package alone.
"""
