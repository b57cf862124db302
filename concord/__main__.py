from concord.cli import app

app()
