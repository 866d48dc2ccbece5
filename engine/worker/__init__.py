"""The Faust side: the app, the journey agent and the processor it calls."""
