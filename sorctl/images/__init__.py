"""The image build files (Dockerfile, entrypoint, healthcheck, scripts, pinned constraints),
shipped as package data: `sorctl images build` sends them to the engine from wherever sorctl is
installed."""
