"""The test suite; its layout mirrors the code (core, loaders, transforms, checks, reports, commands)."""
