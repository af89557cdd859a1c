"""The event bus: a stateless XSUB/XPUB forwarder."""
