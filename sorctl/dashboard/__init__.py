"""`sorctl dashboard`: a local web page with the clusters' topology and the solves, live.

Above sorctl.api in the layers: it reads clusters through the API and solves through their feeds
(sorctl.solvefeed); it never calls Docker itself. Its web server and charts come from installed
packages (starlette, uvicorn, plotly's bundled plotly.js), so it works with no internet.
"""
