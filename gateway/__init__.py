"""HTTP gateway: OpenAI / TEI / BEI routes translated into Triton gRPC calls."""
