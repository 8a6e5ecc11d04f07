"""The REST API: DRF viewsets over the store, with a store-backed paginator."""
