"""Pictures of the collection and of a match: the 2-D map of the collection
(``collection_map``, drawn by ``map_render``) and the heat map of why a photo matched
(``heat_map``)."""
