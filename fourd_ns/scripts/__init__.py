"""Console commands of fourd_ns (thin tyro front ends over library code)."""
