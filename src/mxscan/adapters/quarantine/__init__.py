"""Quarantine adapter: ``mxscan quarantine`` and ``mxscan learn``, the admin's way
to list, show, release, delete and expire what the ``[quarantine]`` store kept, and
to teach the scanners that learn. The store itself is core (``mxscan.quarantine``):
every adapter's scans store through it.
"""
