"""Business rules. Services take the studio, the actor and the clock as arguments and never read the request."""
