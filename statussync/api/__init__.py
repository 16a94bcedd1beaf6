"""bxsync's HTTP edge (DRF): the Bitrix webhook endpoints, health, and the OpenAPI schema.

A webhook request passes, in this order: the parser (size cap → 413, field cap and malformed bodies → 400),
the portal's application-token authentication (→ 403), the input serializer (→ 400), then the
`statussync.events.event_receive` service, which stores the event and its job before the 200.
"""
