"""Faces through a shot: detection, tracks, identity, rejuvenation, lip-sync, audio features.

The backends of each face capability register in ``vfx.face.backends``; ``vfx.job.build_steps`` puts
``DetectFaces`` (it finds, tracks and consent-decides every face once) before the likeness edits,
which only read ``batch.faces``.
"""
