"""`ardistill app`: a gradio page that shows a teacher and its students side by side, with
the same noise for every method (`app.compare` holds the logic, `app.page` the page)."""
