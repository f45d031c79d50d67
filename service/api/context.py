"""Access to the process-wide Broker from request handlers."""

from flask import current_app

from service.sharing.broker import Broker


def broker() -> Broker:
    return current_app.extensions["sharing_broker"]
