"""Helpers shared by the tests, the demo and the benchmark: processes, the Prefect server, HTTP
stand-ins, the relaying proxy, running the pipe as a step does, and the leak check."""
