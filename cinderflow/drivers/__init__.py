"""Volume drivers: the interface (`base`), the registry and the drivers shipped with cinderflow."""
