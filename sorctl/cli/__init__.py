"""The sorctl command line (typer): `up / status / logs / scale / down` (cluster_cmd, with
hosts_cmd for clusters across hosts), `solve`, `gen`, `images`, `dashboard`; main builds the app
and maps errors to exit codes (exit_codes). Every command reaches clusters through sorctl.api."""
