"""The ``vol`` command line (installed as the package ``volumetric_cli``)."""
