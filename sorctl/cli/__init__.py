"""sorctl command-line interface: cluster lifecycle, images and the solve front end."""
