"""The write side: webhook endpoints and vendor adapters (verify + normalise), then durable append."""
