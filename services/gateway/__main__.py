"""Run the gateway under gunicorn (threaded workers): ``python -m services.gateway``."""
from gunicorn.app.base import BaseApplication

from services.common import settings


class GatewayServer(BaseApplication):
    def load_config(self):
        self.cfg.set("bind", f"{settings.get('GATEWAY_HOST')}:{settings.get('GATEWAY_PORT')}")
        self.cfg.set("workers", settings.get_int("GATEWAY_WORKERS"))
        self.cfg.set("threads", settings.get_int("GATEWAY_THREADS"))
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("graceful_timeout", 1)
        self.cfg.set("accesslog", None)
        self.cfg.set("loglevel", settings.get("LOG_LEVEL").lower())

    def load(self):
        from services.gateway.wsgi import app

        return app


if __name__ == "__main__":
    GatewayServer().run()
