"""A results-queue outage without losing anything: an HTTP proxy in front of moto's SQS that, while
`outage` is set, answers every SendMessage / SendMessageBatch to the results queue the way SQS
answers for a deleted queue (400 `QueueDoesNotExist`, AWS JSON 1.0 protocol, which both the Rust
SDK and botocore speak to SQS), and forwards everything else unchanged.

Why not delete the queue in moto: a queue deleted and recreated loses the results published
just before the deletion and not yet drained by the harness, which would count as lost jobs that
the worker did not lose. Only the workers go through the proxy; the harness drains moto directly.
"""

import http.client
import http.server
import json
import threading
import time

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}
MISSING = json.dumps({"__type": "com.amazonaws.sqs#QueueDoesNotExist",
                      "message": "The specified queue does not exist."}).encode()


class Proxy:
    def __init__(self, upstream_port, results_queue_name, port):
        self.upstream_port = upstream_port
        self.queue_marker = "/" + results_queue_name
        self.outage = threading.Event()
        self.refused = 0
        self.refused_lock = threading.Lock()
        proxy = self
        local = threading.local()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _upstream(self):
                conn = getattr(local, "conn", None)
                if conn is None:
                    conn = local.conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                return conn

            def _refuse(self):
                with proxy.refused_lock:
                    proxy.refused += 1
                self.send_response(400)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("x-amzn-query-error", "AWS.SimpleQueueService.NonExistentQueue;Sender")
                self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
                self.send_header("Content-Length", str(len(MISSING)))
                self.end_headers()
                self.wfile.write(MISSING)

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target = self.headers.get("X-Amz-Target", "")
                if proxy.outage.is_set() and target.endswith((".SendMessage", ".SendMessageBatch")):
                    try:
                        url = json.loads(body or b"{}").get("QueueUrl", "")
                    except ValueError:
                        url = ""
                    if url.endswith(proxy.queue_marker):
                        self._refuse()
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                for attempt in range(2):
                    conn = self._upstream()
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        resp = conn.getresponse()
                        data = resp.read()
                        break
                    except (OSError, http.client.HTTPException):
                        conn.close()
                        local.conn = None
                        if attempt:
                            try:
                                self.send_error(502)
                            except OSError:
                                pass
                            return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = do_PUT = do_DELETE = _forward

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a worker hanging up mid-request (at shutdown) is not news

        self.server = Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def schedule(self, t0, start_s, end_s):
        """Sets the outage from t0 + start_s to t0 + end_s (wall clock), on a timer thread."""
        def run():
            time.sleep(max(0.0, t0 + start_s - time.time()))
            self.outage.set()
            time.sleep(max(0.0, t0 + end_s - time.time()))
            self.outage.clear()
        threading.Thread(target=run, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
