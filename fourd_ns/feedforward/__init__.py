"""Feed-forward two-view networks (Flow4R with an optional Flow3r-style factored-flow head), their shared data
types and weight loading. Import the submodules directly (``fourd_ns.feedforward.flow4r``,
``fourd_ns.feedforward.pretrained``); this package file stays import-free so that light users pay nothing."""
