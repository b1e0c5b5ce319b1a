"""Baselines that relaystore is measured against: raw drivers and other projects' layouts."""
