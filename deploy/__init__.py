"""Deploy helpers: build_artifact (the release), deploy (ssh, rsync, install.sh), install.sh, the unit."""
