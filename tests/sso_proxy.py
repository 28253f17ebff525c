"""A stand-in for the plant's single sign-on in front of the desk: a few lines of tornado.

``python tests/sso_proxy.py --port P --upstream http://127.0.0.1:D --source 127.0.0.2``

``/sso/login?user=NAME&next=/`` is its sign-in (a real one would ask a password or Kerberos): it
sets its own session cookie. Every other request, HTTP or websocket, is forwarded to the desk from
the address ``--source`` (the desk trusts that peer address, and only it), with the signed-in
person's name and groups in ``X-Forwarded-User`` / ``X-Forwarded-Groups``, as oauth2-proxy and
mod_auth_openidc pass them. Whatever identity headers the browser sent are dropped first, as a real
proxy drops them. Host and Origin go through unchanged, so the desk's origin check sees the
address the browser used.
"""

from __future__ import annotations

import argparse
import asyncio

from tornado import httpclient, web, websocket

#: The groups the sign-on knows for each person (the desk maps groups to roles in its settings).
GROUPS = {"ana": "Domain Users,kafer-approvers", "vic": "Domain Users,kafer-viewers", "eve": "Domain Users"}
#: Headers never forwarded: hop-by-hop, the websocket handshake's own, and identity a client might forge.
DROPPED = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
           "content-length", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
           "sec-websocket-accept", "sec-websocket-protocol", "x-forwarded-user", "x-forwarded-groups",
           "x-forwarded-for"}


def forwarded(handler: web.RequestHandler) -> dict[str, str]:
    """The request's headers as the desk gets them: cleaned, with the signed-in person added."""
    headers = {k: v for k, v in handler.request.headers.get_all() if k.lower() not in DROPPED}
    user = handler.get_cookie("sso")
    if user in GROUPS:
        headers.update({"X-Forwarded-User": user, "X-Forwarded-Groups": GROUPS[user]})
    return headers


class SignOn(web.RequestHandler):
    def get(self):
        self.set_cookie("sso", self.get_argument("user"), httponly=True)
        self.redirect(self.get_argument("next", "/"))


class Forward(web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

    async def forward(self):
        settings = self.application.settings
        request = httpclient.HTTPRequest(settings["upstream"] + self.request.uri, method=self.request.method,
                                         headers=forwarded(self), body=self.request.body or None,
                                         follow_redirects=False, allow_nonstandard_methods=True,
                                         decompress_response=False, network_interface=settings["source"],
                                         request_timeout=300)
        reply = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        self.set_status(reply.code, reply.reason)
        self._headers.clear()
        for name, value in reply.headers.get_all():
            if name.lower() not in DROPPED:
                self.add_header(name, value)
        if reply.body:
            self.write(reply.body)

    get = head = post = put = patch = delete = forward


class ForwardSocket(websocket.WebSocketHandler):
    upstream = None

    async def prepare(self):
        settings = self.application.settings
        url = "ws" + settings["upstream"][len("http"):] + self.request.uri
        asked = [p.strip() for p in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        request = httpclient.HTTPRequest(url, headers=forwarded(self), network_interface=settings["source"])
        try:
            self.upstream = await websocket.websocket_connect(request, subprotocols=asked or None)
        except httpclient.HTTPClientError as exc:
            raise web.HTTPError(exc.code) from None

    def select_subprotocol(self, subprotocols):
        return self.upstream.selected_subprotocol

    def check_origin(self, origin):
        return True  # the desk behind checks the origin itself

    async def open(self, *args):
        asyncio.ensure_future(self.pump())

    async def pump(self):
        while (message := await self.upstream.read_message()) is not None:
            await self.write_message(message, binary=isinstance(message, bytes))
        self.close()

    def on_message(self, message):
        self.upstream.write_message(message, binary=isinstance(message, bytes))

    def on_close(self):
        if self.upstream is not None:
            self.upstream.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--source", required=True)
    args = parser.parse_args()

    async def run():
        app = web.Application([(r"/sso/login", SignOn), (r"/api/kernels/[^/]+/channels", ForwardSocket),
                               (r"/.*", Forward)], upstream=args.upstream, source=args.source)
        app.listen(args.port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
