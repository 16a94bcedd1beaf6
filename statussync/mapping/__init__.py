"""The mapping of order statuses to deal stages: the document and its validator (`document`), the stored
mapping (`store`), what a change does to existing links (`impact`), and the portals' names of statuses and
stages (`catalog`, read by `catalog_refresh`)."""
