"""The `trident` command line and the supervisor of Triton + gateway (imports the builder, the gateway, the runtime)."""
