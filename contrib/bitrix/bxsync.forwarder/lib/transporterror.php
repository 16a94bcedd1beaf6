<?php

declare(strict_types=1);

namespace Bxsync\Forwarder;

/**
 * bxsync could not be reached in time (refused, unresolvable, TLS failure, timeout). The message names the
 * endpoint without credentials and never the body, which carries the application token.
 */
final class TransportError extends \RuntimeException
{
}
