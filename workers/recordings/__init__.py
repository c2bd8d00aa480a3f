"""Recordings and their orchestration: what the app server asked for, and the steps that make Agora do it.

=============  ===============================================================================================
``machine``    states, desired states, session outcomes and the one table of legal transitions
``model``      the stored recording, its sessions and its file manifest
``decide``     the decisions, pure: (recording, callbacks, time) -> the next Agora call, and what an answer means
``runner``     one step: lock, load, decide, call Agora through the rate limit, save (fenced), repeat
``store``      creating recordings (idempotently), API commands and reads
``timers``     one pending wake-up per recording, served by every worker
``routing``    callbacks wake the recordings they belong to, and find the owners of tasks nobody announced
=============  ===============================================================================================
"""
