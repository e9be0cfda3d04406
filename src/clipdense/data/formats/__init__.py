"""The real on-disk layouts users already have, one module each: image-text CSV / WebDataset
(``imagetext``), COCO instances / panoptic (``coco``), semantic-segmentation and ImageFolder trees
(``folders``), and the open-vocabulary detection splits (``ovcoco``)."""
