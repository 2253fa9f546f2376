"""A third-party plugin that fails to import: graphinspect must warn and go on."""

raise ImportError("this plugin needs a package that is not installed (deliberately)")
