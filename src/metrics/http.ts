// GET /metrics (Prometheus text format) and GET /health on the daemon's own port. The WebSocket
// server calls this for plain HTTP requests; on a TLS port the listener has already required the
// client certificate, so a scraper needs one as any JSON-RPC client does.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DaemonMetrics } from './metrics.js';

/** Answers /metrics and /health; returns false for any other path (the caller answers it). */
export function serveMetricsHttp(metrics: DaemonMetrics, req: IncomingMessage, res: ServerResponse): boolean {
  const path = (req.url ?? '').split('?')[0];
  if (path !== '/metrics' && path !== '/health') return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' });
    res.end(`${path} answers GET only\n`);
    return true;
  }
  if (path === '/health') {
    const health = metrics.health();
    const body = JSON.stringify(health) + '\n';
    res.writeHead(health.status === 'serving' ? 200 : 503, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  }
  metrics.scrape().then(
    ({ contentType, text }) => {
      res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : text);
    },
    (err: unknown) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`metrics could not be collected: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}\n`);
    },
  );
  return true;
}
