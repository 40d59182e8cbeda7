"""Connection health: the provider's cheapest authenticated call per connection, hourly in
waves (tasks.py) and on demand (Check now), its verdict written through
connections.health_rows. May use connections/, providers/ and the core.
"""
