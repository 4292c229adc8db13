"""The canonical model every component shares: events, money, configuration, time. Pure."""
