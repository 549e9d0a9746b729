"""Reports (/v1/reports/...): the analytics of vpbx_common.analytics run on the CDR store
for the caller's tenant, as JSON, CSV or XLSX."""
