"""A one-file Django project: settings in code, three views, the WSGI handler."""

import json

from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="corpus-app-not-secret",
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
    # Django logs request errors to the console only with DEBUG on; a service wants them on.
    LOGGING={
        "version": 1,
        "handlers": {"console": {"class": "logging.StreamHandler"}},
        "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
    },
)

from django.core.wsgi import get_wsgi_application  # noqa: E402  (after settings)
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


def index(request):
    return HttpResponse("hello from django_wsgi\n", content_type="text/plain")


@csrf_exempt
def echo(request):
    if request.method != "POST":
        return HttpResponse(status=405)
    return JsonResponse({"echo": json.loads(request.body)})


def error(request):
    raise RuntimeError("the error route fails on purpose")


urlpatterns = [path("", index), path("echo", echo), path("error", error)]
application = get_wsgi_application()
