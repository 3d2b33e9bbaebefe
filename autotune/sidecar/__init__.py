"""The sidecar: watch a live server, export what speculative decoding does, detect drift,
advise a draft-max and retune on a canary. ``loop.py`` ties the parts together."""
