"""nerfstudio ``MethodSpecification`` objects (wiring only; the entry points of ``nerfstudio.method_configs``)."""
