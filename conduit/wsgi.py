from django.core.wsgi import get_wsgi_application

from conduit.startup import configured_settings

configured_settings()
application = get_wsgi_application()
