"""Faces through a shot: detection, tracks, identity, rejuvenation, lip-sync, audio features."""
