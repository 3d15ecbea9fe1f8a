from django.urls import path

from . import views

urlpatterns = [path("push/", views.push), path("ticket/", views.ticket)]
