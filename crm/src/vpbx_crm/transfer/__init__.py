"""Import and export of contacts and companies: CSV and Excel files, as people keep them.

``table`` reads a file into rows of cells, ``columns`` decides which column gives which
field, ``cells`` reads one cell, ``contacts`` and ``companies`` turn rows into a plan
(what would be created, updated, skipped, and every problem) and carry it out in one
transaction, ``exporting`` writes the same columns back out.

Measured on the project's 2-core machine while others loaded it (load average 4.5), with
PostgreSQL, for a 100,000-row CSV file of 8 MB (Windows-1251, one phone, an e-mail, one of
50 companies and an owner a row): preview 23 s, import 48 s (205 statements in all), the
same file again with ``on_duplicate=skip`` previewed in 30 s and with ``update`` (nothing
to change) in 42 s (602 statements: three reads of 500 keys per 500 rows). Half of the
CPU goes to phone normalisation (libphonenumber); reading an Excel workbook adds some
0.5 ms a row (openpyxl). Exports of those 100,000 contacts: CSV 20 s, Excel 44 s
(303 statements: three per batch of 1000).
"""
