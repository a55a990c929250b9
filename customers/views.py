from django.http import HttpRequest, HttpResponse


def customer_list(request: HttpRequest) -> HttpResponse:
    return HttpResponse("todo")


def customer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse("todo")
