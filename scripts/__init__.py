import satkit  # noqa: F401  (first: it turns off gRPC's fork handlers before gRPC is imported)
