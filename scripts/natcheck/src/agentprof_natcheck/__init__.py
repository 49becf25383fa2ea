"""Offline components for scripts/nat-plugin-check.sh: a scripted ReAct chat model and a tool."""
