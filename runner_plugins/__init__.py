"""Job types and the interface they implement."""
