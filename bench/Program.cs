// Benchmarks that print figures; never run by the test suite.
Console.Error.WriteLine("usage: dotnet run -c Release --project bench -- reproduce <lenet-300-100|lenet-5> [options]");
return 2;
