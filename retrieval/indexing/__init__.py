"""Getting photos into a collection and moving collections: folders indexed incrementally
(``ingest``), the same on a Ray cluster (``cluster``), regions of indexed photos (``regions``),
a collection embedded again by another model (``reembed``), and export and import (``transfer``)."""
