"""Device profiles, one YAML file per target (read by :mod:`edgecv.devices`); installed with edgecv, so a
wheel carries them. Add a device by adding a file here."""
