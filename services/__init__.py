"""zerocontact: event-driven microservices for zero-contact banking."""
