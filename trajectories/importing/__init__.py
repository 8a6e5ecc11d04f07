"""Turning dumps of agent rollouts into stored trajectories.

readers (files, .gz, directories, stdin) → adapters (canonical, chat, responses, swe-agent,
mapping) → validation → batches → the store. `pipeline.run_import` ties them together.
"""
