"""``slm-mesh top``: a live, full-screen view of the mesh that lets the person step in.

Modules: :mod:`.model` (what is known, from snapshots and events; pure), :mod:`.feed` (the
broker connection), :mod:`.cells` and :mod:`.columns` (the text of the screen; pure),
:mod:`.panes`, :mod:`.dialogs` and :mod:`.app` (textual). Only ``slm-mesh top`` imports
this package: textual costs ~0.4 s to import, which no other command pays.
"""
