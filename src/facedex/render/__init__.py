"""Renderings for people to look at: annotated photos (:mod:`.image`),
annotated videos and animations and contact sheets of tracks (:mod:`.video`),
and the drawing primitives they share (:mod:`.draw`)."""
