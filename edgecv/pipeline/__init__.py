"""The camera pipeline: sources in, detection and tracking, sinks out."""
